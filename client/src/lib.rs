//! icjournal client.
