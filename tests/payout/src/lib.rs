//! Payout example.
