-- Applied by every `inferq migrate` after the functions, so that it holds
-- for whatever they define now.
--
-- Functions are executable by PUBLIC unless revoked: nothing of inferq is.
-- A producer gets what inferq.grant_producer grants (enqueue, cancel, the
-- tensor helpers, inferq.my_jobs) and nothing else (test_db_producer_role).
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA inferq FROM PUBLIC;

-- A producer is a role grant_producer granted inferq.my_jobs to. A function
-- that a migration dropped and re-created (a signature change) lost its
-- grants: every producer gets them again.
DO $$
DECLARE
  r regrole;
BEGIN
  FOR r IN SELECT DISTINCT a.grantee::regrole
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = 'inferq.my_jobs'::regclass
              AND a.privilege_type = 'SELECT' AND a.grantee <> 0 AND a.grantee <> c.relowner LOOP
    PERFORM inferq.grant_producer(r);
  END LOOP;
END
$$;
