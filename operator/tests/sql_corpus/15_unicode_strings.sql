-- U& strings and identifiers, with and without UESCAPE.
CREATE TABLE U&"d\0061ta" (x text DEFAULT U&'d\0061t\+000061;', y text DEFAULT U&'d!0061t!+000061' UESCAPE '!');
