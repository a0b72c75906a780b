# Writes OUT: a C++ file that embeds every migrations/NNNN_name.sql in order,
# then migrations/functions/*.sql (by name) and migrations/privileges.sql, so
# `inferq migrate` needs no files beside the binary. functions_digest() is the
# SHA-256 of those last files, names included: the daemon compares it with the
# one migrate stored, to refuse a database whose functions are another build's.
file(GLOB files "${MIGRATIONS_DIR}/[0-9][0-9][0-9][0-9]_*.sql")
list(SORT files)
set(body "")
foreach(f ${files})
  get_filename_component(name "${f}" NAME_WE)
  string(SUBSTRING "${name}" 0 4 num)
  math(EXPR version "${num}")
  file(READ "${f}" sql)
  string(APPEND body "    {${version}, \"${name}\", R\"inferq_sql(${sql})inferq_sql\"},\n")
endforeach()

file(GLOB function_files "${MIGRATIONS_DIR}/functions/*.sql")
list(SORT function_files)
list(APPEND function_files "${MIGRATIONS_DIR}/privileges.sql")
set(functions "")
set(digested "")
foreach(f ${function_files})
  file(RELATIVE_PATH name "${MIGRATIONS_DIR}" "${f}")
  file(READ "${f}" sql)
  string(APPEND functions "    {\"${name}\", R\"inferq_sql(${sql})inferq_sql\"},\n")
  string(APPEND digested "${name}\n${sql}\n")
endforeach()
string(SHA256 digest "${digested}")

file(WRITE "${OUT}.tmp" "// Generated from migrations/ by cmake/embed_migrations.cmake.
#include \"db/migrate.hpp\"

namespace inferq::db {

const std::vector<Migration>& embedded_migrations() {
  static const std::vector<Migration> kMigrations = {
${body}  };
  return kMigrations;
}

const std::vector<SqlFile>& embedded_functions() {
  static const std::vector<SqlFile> kFunctions = {
${functions}  };
  return kFunctions;
}

const std::string& functions_digest() {
  static const std::string kDigest = \"${digest}\";
  return kDigest;
}

}  // namespace inferq::db
")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
