-- Session claims across nodes carry an epoch (docs/architecture.md, "Sessions across nodes"): every claim takes
-- the next value of claim_epochs, and a session row is owned by the claim with the highest
-- epoch. A claim names its node only over a row of a lower epoch; a node's writes of a session
-- row apply only while the row's epoch is not above the one the node holds. Two CONNECTs of one
-- client id on two nodes at once: the higher epoch wins on the row and between the nodes.
CREATE SEQUENCE claim_epochs;
ALTER TABLE sessions ADD COLUMN claim_epoch bigint NOT NULL DEFAULT 0;
