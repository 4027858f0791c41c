-- Quoted identifiers and strings that hold comment starts.
CREATE TABLE "a--b" ("/*x" text DEFAULT '-- not a comment', "y*/" text DEFAULT '/* nor this */');
