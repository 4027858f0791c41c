-- Semicolons in strings, quoted identifiers and comments.
CREATE TABLE "odd;name" ("col;umn" text DEFAULT 'a;b' CHECK ("col;umn" <> ';')); -- trailing; comment
COMMENT ON TABLE "odd;name" IS 'semi; colons; inside';
/* ; */ CREATE TABLE plain (id int);
