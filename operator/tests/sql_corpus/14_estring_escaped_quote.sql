-- E-strings with escaped quotes and backslashes.
CREATE TABLE e_strings (a text DEFAULT E'it\'s; fine', b text DEFAULT E'back\\', c text DEFAULT e'\x41;');
