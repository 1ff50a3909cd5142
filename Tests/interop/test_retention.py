"""ingest.retention: rows older than the retention are deleted (PostgreSQL also keeps daily
partitions ahead). Old rows are written straight into the table, then a broker starts with a
retention of one day: retention runs before the broker listens, so the check needs no waiting."""
import time

from mqtt_helpers import Client


def test_ingest_retention_deletes_old_rows_and_keeps_new_ones(store, broker_factory):
    broker = broker_factory(extra_args=store.args)
    c = Client.connected(broker, client_id="ret")
    c.publish("ret/new", b"fresh", qos=1)
    c.disconnect()
    broker.terminate()
    old = time.gmtime(time.time() - 3 * 86400)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S.000", old)
    if store.kind == "sqlite":
        store.query(f"""INSERT INTO messages (received_at, client_id, topic, payload, qos, retain, content_hash, node_id)
                        VALUES ('{stamp}', 'ret', 'ret/old', X'00', 0, 0, X'00', 'n')""")
    else:
        store.query(f"""INSERT INTO messages (received_at, client_id, topic, payload, qos, retain, content_hash, node_id)
                        VALUES ('{stamp}+00', 'ret', 'ret/old', '\\x00', 0, false, '\\x00', 'n')""")
    assert store.scalar("SELECT count(*) FROM messages WHERE topic = 'ret/old'") == 1

    broker_factory(extra_args=store.args, env={"STARLING_INGEST_RETENTION": "1d"})
    assert store.scalar("SELECT count(*) FROM messages WHERE topic = 'ret/old'") == 0
    assert store.scalar("SELECT count(*) FROM messages WHERE topic = 'ret/new'") == 1
    if store.kind == "postgres":
        today = time.strftime("%Y%m%d", time.gmtime())
        partitions = [row[0] for row in store.query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'messages' "
            "AND p.relnamespace = current_schema()::regnamespace")]
        assert f"messages_{today}" in partitions
        assert "messages_default" in partitions
