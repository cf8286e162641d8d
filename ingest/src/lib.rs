//! gridcast-ingest
