"""FiftyOne-facing foundations: field rules, label schema, stored runs, bulk reads and writes, prediction fields."""
