-- The wills of connections whose sessions are not stored (Session Expiry Interval 0, or a
-- 3.1.1 Clean Session 1), kept by their node for as long as each connection lasts, so that a
-- survivor publishes them when the node dies (EMQX lost them with the node: #1667). `token`
-- tells connections of one client id apart (it comes from the node's id block, so it also tells
-- a node's earlier starts from the current one).
CREATE TABLE connection_wills (
    node_id     text NOT NULL,
    client_id   text NOT NULL,
    token       bigint NOT NULL,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    qos         smallint NOT NULL,
    retain      boolean NOT NULL,
    properties  bytea NOT NULL,
    PRIMARY KEY (node_id, token)
);
