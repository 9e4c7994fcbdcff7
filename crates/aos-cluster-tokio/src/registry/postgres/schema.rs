//! The member table and the triggers that keep its marks.

use super::TABLE;

/// Two concurrent first starts must not race to create the table: PostgreSQL's
/// `CREATE TABLE IF NOT EXISTS` is not safe against itself, so creation holds
/// this transaction-scoped advisory lock ("aos_reg" in ASCII).
const SCHEMA_LOCK_KEY: i64 = 0x61_6f73_5f72_6567;

/// The setting a purge sets for its own statement (transaction-local, so it
/// never outlives the statement, PgBouncer in transaction mode included):
/// the deletions it makes are real ones.
pub(super) const PURGING: &str = "aos_cluster.purging";

/// One simple-protocol batch, run at every connection: creates the table
/// when it is missing, and brings a table made by a build without late marks
/// up to this layout in place, so builds old and new share one table through
/// a rolling upgrade.
///
/// The triggers:
/// - every insert, and every update that changes anything but a heartbeat's
///   time moving on (a hand-made one included), moves the row's change mark
///   (`changed_xid`), which incremental reads follow;
/// - a heartbeat clears a late mark (and so moves the change mark);
/// - a deletion other than the purge's (by hand) becomes a removed mark,
///   which every reader reads as a change; the purge later deletes the row.
///   A deletion cannot be seen by reading what is still there, and this
///   keeps the incremental read to one table;
/// - `TRUNCATE` is refused: it skips row triggers, so instances would go on
///   listing the rows it took.
pub(super) fn create_or_upgrade() -> String {
    format!(
        "SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY});
         DO $$ BEGIN
         IF to_regclass('{TABLE}') IS NULL THEN
             CREATE TABLE {TABLE} (
                 id            BIGINT      PRIMARY KEY,
                 incarnation   BIGINT      NOT NULL,
                 endpoint      TEXT        NOT NULL,
                 cluster       TEXT,
                 role          TEXT        NOT NULL,
                 accepting     BOOLEAN     NOT NULL,
                 max_sessions  BIGINT      NOT NULL,
                 connected     BIGINT      NOT NULL,
                 heartbeat_at  TIMESTAMPTZ NOT NULL,
                 removed       BOOLEAN     NOT NULL DEFAULT false,
                 changed_xid   xid8        NOT NULL DEFAULT pg_current_xact_id()
             ) WITH (fillfactor = 50);
             CREATE INDEX {TABLE}_changed ON {TABLE} (changed_xid);
         END IF;
         IF NOT EXISTS (SELECT 1 FROM pg_attribute
                        WHERE attrelid = '{TABLE}'::regclass AND attname = 'late'
                          AND NOT attisdropped) THEN
             ALTER TABLE {TABLE} ADD COLUMN late BOOLEAN NOT NULL DEFAULT false;
             CREATE OR REPLACE FUNCTION {TABLE}_changed() RETURNS trigger LANGUAGE plpgsql AS $f$
             BEGIN
                 IF TG_OP = 'UPDATE' THEN
                     IF OLD.late AND NEW.heartbeat_at > OLD.heartbeat_at THEN
                         NEW.late := false;
                     END IF;
                 END IF;
                 NEW.changed_xid := pg_current_xact_id();
                 RETURN NEW;
             END $f$;
             DROP TRIGGER IF EXISTS {TABLE}_inserted ON {TABLE};
             CREATE TRIGGER {TABLE}_inserted BEFORE INSERT ON {TABLE}
                 FOR EACH ROW EXECUTE FUNCTION {TABLE}_changed();
             DROP TRIGGER IF EXISTS {TABLE}_updated ON {TABLE};
             CREATE TRIGGER {TABLE}_updated BEFORE UPDATE ON {TABLE}
                 FOR EACH ROW
                 WHEN (NEW.changed_xid <> OLD.changed_xid
                       OR (NEW.id, NEW.incarnation, NEW.endpoint, NEW.cluster, NEW.role,
                           NEW.accepting, NEW.max_sessions, NEW.connected, NEW.removed)
                          IS DISTINCT FROM
                          (OLD.id, OLD.incarnation, OLD.endpoint, OLD.cluster, OLD.role,
                           OLD.accepting, OLD.max_sessions, OLD.connected, OLD.removed)
                       OR NEW.heartbeat_at < OLD.heartbeat_at OR NEW.heartbeat_at > now()
                       OR OLD.late OR NEW.late)
                 EXECUTE FUNCTION {TABLE}_changed();
             CREATE OR REPLACE FUNCTION {TABLE}_deleted() RETURNS trigger LANGUAGE plpgsql AS $f$
             BEGIN
                 IF OLD.removed OR current_setting('{PURGING}', true) = 'on' THEN
                     RETURN OLD;
                 END IF;
                 UPDATE {TABLE} SET removed = true WHERE id = OLD.id;
                 RETURN NULL;
             END $f$;
             -- A table made by an older build also has a tombstone trigger
             -- and table: deletions are removed marks here, so the trigger
             -- goes; the table stays for that build's processes still
             -- reading it.
             DROP TRIGGER IF EXISTS {TABLE}_gone ON {TABLE};
             DROP TRIGGER IF EXISTS {TABLE}_deleted ON {TABLE};
             CREATE TRIGGER {TABLE}_deleted BEFORE DELETE ON {TABLE}
                 FOR EACH ROW EXECUTE FUNCTION {TABLE}_deleted();
             CREATE OR REPLACE FUNCTION {TABLE}_truncated() RETURNS trigger LANGUAGE plpgsql AS $f$
             BEGIN
                 RAISE EXCEPTION 'TRUNCATE of {TABLE} is refused: DELETE the rows instead'
                     USING HINT = 'a deleted row becomes a removed mark every instance reads; '
                                  'truncated rows would stay listed by every instance';
             END $f$;
             DROP TRIGGER IF EXISTS {TABLE}_truncated ON {TABLE};
             CREATE TRIGGER {TABLE}_truncated BEFORE TRUNCATE ON {TABLE}
                 FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_truncated();
         END IF;
         END $$;"
    )
}
