CREATE TABLE IF NOT EXISTS order_archive (id bigint PRIMARY KEY, user_id bigint, total numeric);
INSERT INTO order_archive (id, user_id, total) SELECT id, user_id, total FROM orders WHERE created_at < '2020-01-01';
ALTER TABLE order_archive ADD CONSTRAINT order_archive_user_fk FOREIGN KEY (user_id) REFERENCES users (id);