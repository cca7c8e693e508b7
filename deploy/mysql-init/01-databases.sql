-- Runs once, when the MySQL data directory is empty (first `docker compose up`).
-- The image has already created the app user from MYSQL_USER / MYSQL_PASSWORD;
-- no password appears here. Each service owns one database.
CREATE DATABASE IF NOT EXISTS `authgate_auth` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE DATABASE IF NOT EXISTS `authgate_profile` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- The services create their own tables on start, hence DDL rights on their databases.
GRANT ALL PRIVILEGES ON `authgate_auth`.* TO 'authgate'@'%';
GRANT ALL PRIVILEGES ON `authgate_profile`.* TO 'authgate'@'%';
FLUSH PRIVILEGES;
