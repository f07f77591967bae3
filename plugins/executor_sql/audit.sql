-- Installed by the superuser in a fresh sandbox database before any SQL runs:
-- event triggers that record, per statement, every object created, altered or
-- dropped. The proposal's role may read the log and nothing more (PUBLIC here
-- is the use's role alone: no other role may connect to a use's database).
CREATE SCHEMA executor_audit;
CREATE TABLE executor_audit.events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event text NOT NULL,
    command_tag text,
    object_type text,
    schema_name text,
    object_identity text,
    classid oid,
    objid oid,
    objsubid integer,
    original boolean
);
CREATE FUNCTION executor_audit.on_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO executor_audit.events (event, command_tag, object_type, schema_name, object_identity, classid, objid, objsubid, original)
    SELECT 'ddl', command_tag, object_type, schema_name, object_identity, classid, objid, objsubid, NULL
    FROM pg_event_trigger_ddl_commands();
END $$;
CREATE FUNCTION executor_audit.on_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO executor_audit.events (event, command_tag, object_type, schema_name, object_identity, classid, objid, objsubid, original)
    SELECT 'drop', tg_tag, object_type, schema_name, object_identity, classid, objid, objsubid, original
    FROM pg_event_trigger_dropped_objects();
END $$;
REVOKE ALL ON FUNCTION executor_audit.on_ddl(), executor_audit.on_drop() FROM PUBLIC;
CREATE EVENT TRIGGER executor_audit_ddl ON ddl_command_end EXECUTE FUNCTION executor_audit.on_ddl();
CREATE EVENT TRIGGER executor_audit_drop ON sql_drop EXECUTE FUNCTION executor_audit.on_drop();
GRANT USAGE ON SCHEMA executor_audit TO PUBLIC;
GRANT SELECT ON executor_audit.events TO PUBLIC;
