-- An operator right before `--` starts a comment.
CREATE TABLE ops (x int DEFAULT 2--1
, y int DEFAULT 3/**/+1);
