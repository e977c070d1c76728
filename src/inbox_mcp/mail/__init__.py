"""MIME work: composing (stdlib email), parsing (mail-parser), threading helpers, reply text,
HTML to text, verification-code extraction and the search query language. Pure functions: no
database, no network."""
