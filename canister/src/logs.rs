//! Canister log buffers (ic-canister-log), served as JSON at `/logs`.

use ic_canister_log::declare_log_buffer;

// Operator actions, configuration changes, lifecycle.
declare_log_buffer!(name = INFO, capacity = 1000);
// Rejected requests and other details.
declare_log_buffer!(name = DEBUG, capacity = 1000);
