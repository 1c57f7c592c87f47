-- The list's index leaves out files still being uploaded (see
-- migrations/sqlite/0007_list_index_without_open_uploads.sql). Built in this migration's transaction, so
-- it is all or nothing; writes to `files` wait for the build (about a second per million files).
DROP INDEX files_by_creation;
CREATE INDEX files_listed ON files (project_id, created_at DESC, id DESC) WHERE state <> 'uploading';
