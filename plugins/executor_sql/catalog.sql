-- The schema of a sandbox database, normalized: one row per object or part,
-- (kind, parent, name, definition), free of OIDs, so two snapshots compare
-- equal exactly when the schemas are the same. The fifth column, the catalog
-- address (classid:objid:objsubid), is never compared: it places a row in
-- pg_depend's graph. Run by the superuser.
--
-- Every object made after initdb has an OID of at least 16384
-- (FirstNormalObjectId); below that is only the system's own, which the
-- schema filter drops anyway. "oid >= 16384" lets the big catalogs (pg_proc,
-- pg_operator, ...) be read by their OID index instead of scanned whole.
-- Comments are read with subqueries, not obj_description(), a SQL function
-- the planner cannot inline: that halves the query's time.
WITH ns AS (
    SELECT oid, nspname, nspacl FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'executor_audit')
      AND nspname !~ '^pg_(toast_)?temp_'
),
ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e'),
rel AS (
    SELECT c.oid, c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity, c.relacl, c.reloptions,
           quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS ident
    FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
    WHERE c.oid >= 16384 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
      AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_class'::regclass AND ext.objid = c.oid)
)
SELECT kind, parent, name, definition, address FROM (
    SELECT 'schema' AS kind, '' AS parent, quote_ident(nspname) AS name,
           concat_ws(' ', 'acl=' || nspacl::text, 'comment=' || (SELECT d.description FROM pg_description d WHERE d.objoid = oid AND d.classoid = 'pg_namespace'::regclass AND d.objsubid = 0)) AS definition,
           'pg_namespace:' || oid || ':0' AS address
    FROM ns
    UNION ALL
    SELECT 'relation', '', ident,
           concat_ws(' ', 'kind=' || relkind::text, 'persistence=' || relpersistence::text, 'rls=' || relrowsecurity,
                     'force_rls=' || relforcerowsecurity, 'options=' || reloptions::text, 'acl=' || relacl::text,
                     'comment=' || (SELECT d.description FROM pg_description d WHERE d.objoid = oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0)),
           'pg_class:' || oid || ':0'
    FROM rel
    UNION ALL
    SELECT 'column', r.ident, quote_ident(a.attname),
           concat_ws(' ', 'position=' || row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum),
                     format_type(a.atttypid, a.atttypmod), 'notnull=' || a.attnotnull,
                     'default=' || pg_get_expr(d.adbin, d.adrelid), 'identity=' || nullif(a.attidentity::text, ''),
                     'generated=' || nullif(a.attgenerated::text, ''), 'collation=' || co.collname,
                     'acl=' || a.attacl::text, 'comment=' || (SELECT d.description FROM pg_description d WHERE d.objoid = a.attrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum)),
           'pg_class:' || a.attrelid || ':' || a.attnum
    FROM rel r
    JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped AND r.relkind <> 'S'
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
    UNION ALL
    SELECT 'constraint', coalesce(r.ident, format_type(con.contypid, NULL)), quote_ident(con.conname),
           concat_ws(' ', con.contype::text, pg_get_constraintdef(con.oid), 'deferrable=' || con.condeferrable,
                     'deferred=' || con.condeferred, 'valid=' || con.convalidated),
           'pg_constraint:' || con.oid || ':0'
    FROM pg_constraint con
    JOIN ns n ON n.oid = con.connamespace
    LEFT JOIN rel r ON r.oid = con.conrelid
    WHERE con.oid >= 16384 AND (con.conrelid = 0 OR r.oid IS NOT NULL)
    UNION ALL
    SELECT 'index', r.ident, quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_get_indexdef(i.indexrelid),
           'pg_class:' || i.indexrelid || ':0'
    FROM pg_index i
    JOIN rel r ON r.oid = i.indrelid
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    UNION ALL
    SELECT 'view', '', ident, pg_get_viewdef(oid), 'pg_class:' || oid || ':0' FROM rel WHERE relkind IN ('v', 'm')
    UNION ALL
    SELECT 'sequence', '', r.ident,
           concat_ws(' ', format_type(s.seqtypid, NULL), 'start=' || s.seqstart, 'increment=' || s.seqincrement,
                     'min=' || s.seqmin, 'max=' || s.seqmax, 'cache=' || s.seqcache, 'cycle=' || s.seqcycle,
                     'owned_by=' || (SELECT quote_ident(tn.nspname) || '.' || quote_ident(t.relname) || '.' || quote_ident(ta.attname)
                                     FROM pg_depend dep
                                     JOIN pg_class t ON t.oid = dep.refobjid
                                     JOIN pg_namespace tn ON tn.oid = t.relnamespace
                                     JOIN pg_attribute ta ON ta.attrelid = t.oid AND ta.attnum = dep.refobjsubid
                                     WHERE dep.classid = 'pg_class'::regclass AND dep.objid = s.seqrelid
                                       AND dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i')
                                     LIMIT 1)),
           'pg_class:' || s.seqrelid || ':0'
    FROM pg_sequence s JOIN rel r ON r.oid = s.seqrelid
    UNION ALL
    SELECT 'type', '', quote_ident(n.nspname) || '.' || quote_ident(t.typname),
           concat_ws(' ', 'typtype=' || t.typtype::text,
                     'labels=' || (SELECT string_agg(quote_literal(e.enumlabel), ',' ORDER BY e.enumsortorder)
                                   FROM pg_enum e WHERE e.enumtypid = t.oid),
                     'base=' || CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
                     'notnull=' || CASE WHEN t.typtype = 'd' THEN t.typnotnull::text END,
                     'default=' || t.typdefault,
                     'subtype=' || (SELECT format_type(rg.rngsubtype, NULL) FROM pg_range rg WHERE rg.rngtypid = t.oid),
                     'acl=' || t.typacl::text, 'comment=' || (SELECT d.description FROM pg_description d WHERE d.objoid = t.oid AND d.classoid = 'pg_type'::regclass AND d.objsubid = 0)),
           'pg_type:' || t.oid || ':0'
    FROM pg_type t JOIN ns n ON n.oid = t.typnamespace
    WHERE t.oid >= 16384 AND t.typtype IN ('e', 'd', 'r', 'b')
      AND NOT EXISTS (SELECT 1 FROM pg_range mr WHERE mr.rngmultitypid = t.oid)
      AND NOT (t.typtype = 'b' AND t.typelem <> 0 AND t.typlen = -1)
      AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_type'::regclass AND ext.objid = t.oid)
    UNION ALL
    SELECT 'function', '', quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')',
           concat_ws(' ', CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_get_functiondef(p.oid) END,
                     'acl=' || p.proacl::text, 'comment=' || (SELECT d.description FROM pg_description d WHERE d.objoid = p.oid AND d.classoid = 'pg_proc'::regclass AND d.objsubid = 0)),
           'pg_proc:' || p.oid || ':0'
    FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace
    WHERE p.oid >= 16384 AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_proc'::regclass AND ext.objid = p.oid)
    UNION ALL
    SELECT 'trigger', r.ident, quote_ident(tg.tgname), concat_ws(' ', pg_get_triggerdef(tg.oid), 'enabled=' || tg.tgenabled::text),
           'pg_trigger:' || tg.oid || ':0'
    FROM pg_trigger tg JOIN rel r ON r.oid = tg.tgrelid
    WHERE NOT tg.tgisinternal
    UNION ALL
    SELECT 'policy', r.ident, quote_ident(pol.polname),
           concat_ws(' ', pol.polcmd::text, 'permissive=' || pol.polpermissive, 'roles=' || pol.polroles::regrole[]::text,
                     'using=' || pg_get_expr(pol.polqual, pol.polrelid), 'check=' || pg_get_expr(pol.polwithcheck, pol.polrelid)),
           'pg_policy:' || pol.oid || ':0'
    FROM pg_policy pol JOIN rel r ON r.oid = pol.polrelid
    UNION ALL
    SELECT 'rule', r.ident, quote_ident(ru.rulename), pg_get_ruledef(ru.oid), 'pg_rewrite:' || ru.oid || ':0'
    FROM pg_rewrite ru JOIN rel r ON r.oid = ru.ev_class
    WHERE ru.rulename <> '_RETURN'
    UNION ALL
    SELECT 'extension', '', quote_ident(x.extname), concat_ws(' ', x.extversion, 'schema=' || n.nspname),
           'pg_extension:' || x.oid || ':0'
    FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
    WHERE x.extname <> 'plpgsql'
    UNION ALL
    SELECT 'default acl', coalesce(n.nspname, ''), da.defaclobjtype::text, da.defaclacl::text,
           'pg_default_acl:' || da.oid || ':0'
    FROM pg_default_acl da LEFT JOIN pg_namespace n ON n.oid = da.defaclnamespace
    UNION ALL
    SELECT 'object', '', (pg_identify_object(o.classid, o.objid, 0)).type || ' ' || (pg_identify_object(o.classid, o.objid, 0)).identity, '',
           o.classid::text || ':' || o.objid || ':0'
    FROM (
        SELECT 'pg_collation'::regclass AS classid, oid AS objid, collnamespace AS nsp FROM pg_collation WHERE oid >= 16384
        UNION ALL SELECT 'pg_operator'::regclass, oid, oprnamespace FROM pg_operator WHERE oid >= 16384
        UNION ALL SELECT 'pg_opclass'::regclass, oid, opcnamespace FROM pg_opclass WHERE oid >= 16384
        UNION ALL SELECT 'pg_opfamily'::regclass, oid, opfnamespace FROM pg_opfamily WHERE oid >= 16384
        UNION ALL SELECT 'pg_conversion'::regclass, oid, connamespace FROM pg_conversion WHERE oid >= 16384
        UNION ALL SELECT 'pg_ts_config'::regclass, oid, cfgnamespace FROM pg_ts_config WHERE oid >= 16384
        UNION ALL SELECT 'pg_ts_dict'::regclass, oid, dictnamespace FROM pg_ts_dict WHERE oid >= 16384
        UNION ALL SELECT 'pg_statistic_ext'::regclass, oid, stxnamespace FROM pg_statistic_ext WHERE oid >= 16384
    ) o
    JOIN ns n ON n.oid = o.nsp
    WHERE NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = o.classid AND ext.objid = o.objid)
) snapshot
