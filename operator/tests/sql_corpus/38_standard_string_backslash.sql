-- With standard_conforming_strings on, a backslash in a plain string is text.
CREATE TABLE paths (p text DEFAULT 'C:\'); CREATE TABLE after_paths (id int);
