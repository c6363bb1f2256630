//! `canister_inspect_message`: a cheap first filter for ingress messages only. It is NOT a
//! security boundary (it does not run for inter-canister calls, and a malicious node may skip
//! it); every endpoint repeats its own checks. It saves cycles by refusing, before execution,
//! ingress that would be refused anyway.

use crate::config::MAX_ARG_BYTES;

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, including the anonymous principal (public reads).
    Public,
    /// Any authenticated principal (owner-scoped caller endpoints).
    Caller,
    /// Admins and controllers.
    Operator,
    /// Controllers only.
    Controller,
    /// The canister itself (never ingress).
    SelfOnly,
}

/// Every exported method and who may call it. A unit test checks this list against the
/// Candid interface, so a new endpoint cannot be forgotten here.
pub const METHODS: &[(&str, Access)] = &[
    ("record_intent", Access::Caller),
    ("report_result", Access::Caller),
    ("get_entry", Access::Caller),
    ("find_entry", Access::Caller),
    ("list_entries", Access::Caller),
    ("list_unresolved", Access::Caller),
    ("list_failed", Access::Caller),
    ("track_transfer", Access::Caller),
    ("execute_transfer", Access::Caller),
    ("submit_transfer", Access::Caller),
    ("execute_saga", Access::Caller),
    ("submit_saga", Access::Caller),
    ("escrow_account", Access::Public),
    ("ledgers", Access::Public),
    ("metrics", Access::Public),
    ("http_request", Access::Public),
    ("admin_act", Access::Operator),
    ("admin_get_entry", Access::Operator),
    ("admin_list", Access::Operator),
    ("admin_audit", Access::Operator),
    ("get_config", Access::Operator),
    ("set_config", Access::Operator),
    ("pause_recovery", Access::Operator),
    ("resume_recovery", Access::Operator),
    ("controller_view", Access::Controller),
    ("icjournal_commit", Access::SelfOnly),
    #[cfg(feature = "planted-bugs")]
    ("planted_bug", Access::Controller),
];

pub fn access(method: &str) -> Option<Access> {
    METHODS.iter().find(|(m, _)| *m == method).map(|(_, a)| *a)
}

/// Decide whether to accept an ingress message. `is_operator` / `is_controller` are evaluated
/// lazily (only for methods that need them).
pub fn accept(
    method: &str,
    caller_is_anonymous: bool,
    arg_len: usize,
    is_operator: impl FnOnce() -> bool,
    is_controller: impl FnOnce() -> bool,
) -> Result<(), String> {
    let Some(access) = access(method) else {
        return Err(format!("unknown method {method}"));
    };
    if arg_len > MAX_ARG_BYTES {
        return Err(format!(
            "argument of {arg_len} bytes exceeds {MAX_ARG_BYTES}"
        ));
    }
    match access {
        Access::Public => Ok(()),
        _ if caller_is_anonymous => Err("anonymous caller".into()),
        Access::Caller => Ok(()),
        Access::Operator if is_operator() => Ok(()),
        Access::Operator => Err("operators only".into()),
        Access::Controller if is_controller() => Ok(()),
        Access::Controller => Err("controllers only".into()),
        Access::SelfOnly => Err("internal method".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_access_and_size() {
        let yes = || true;
        let no = || false;
        assert!(accept("metrics", true, 10, no, no).is_ok());
        assert!(accept("record_intent", true, 10, no, no).is_err());
        assert!(accept("record_intent", false, 10, no, no).is_ok());
        assert!(accept("record_intent", false, MAX_ARG_BYTES + 1, no, no).is_err());
        assert!(accept("admin_act", false, 10, no, no).is_err());
        assert!(accept("admin_act", false, 10, yes, no).is_ok());
        assert!(accept("admin_act", true, 10, yes, yes).is_err());
        assert!(accept("controller_view", false, 10, yes, no).is_err());
        assert!(accept("controller_view", false, 10, no, yes).is_ok());
        assert!(accept("icjournal_commit", false, 0, yes, yes).is_err());
        assert!(accept("no_such_method", false, 0, yes, yes).is_err());
    }
}
