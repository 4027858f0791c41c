-- Bit and hex strings.
CREATE TABLE bits (b bit(4) DEFAULT B'1010', x bit(8) DEFAULT X'FF', n varbit DEFAULT b'1' /* ; */);
