//! Who may call what (pure decisions; `lib.rs` feeds them the real caller). Checked inside
//! every endpoint, never only in `canister_inspect_message`: it runs for ingress only (never for
//! inter-canister calls), and a malicious node may skip it.

use crate::types::PayoutError;
use candid::Principal;

/// Any authenticated principal (users of their own balance and payouts).
pub fn authenticate(caller: Principal) -> Result<Principal, PayoutError> {
    if caller == Principal::anonymous() {
        return Err(PayoutError::AnonymousCaller);
    }
    Ok(caller)
}

/// Admins from the settings, or controllers of the canister (`is_controller` is only asked
/// when the caller is not a listed admin).
pub fn authorize_admin(
    caller: Principal,
    admins: &[Principal],
    is_controller: impl FnOnce(&Principal) -> bool,
) -> Result<Principal, PayoutError> {
    let caller = authenticate(caller)?;
    if admins.contains(&caller) || is_controller(&caller) {
        Ok(caller)
    } else {
        Err(PayoutError::NotAuthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u8) -> Principal {
        Principal::from_slice(&[n, 3])
    }

    #[test]
    fn anonymous_is_rejected_everywhere() {
        assert_eq!(
            authenticate(Principal::anonymous()),
            Err(PayoutError::AnonymousCaller)
        );
        // Even if (wrongly) listed or reported as a controller.
        assert_eq!(
            authorize_admin(Principal::anonymous(), &[Principal::anonymous()], |_| true),
            Err(PayoutError::AnonymousCaller)
        );
        assert_eq!(authenticate(p(1)), Ok(p(1)));
    }

    #[test]
    fn admins_and_controllers_only() {
        let admins = [p(1)];
        assert_eq!(
            authorize_admin(p(1), &admins, |_| panic!("not asked")),
            Ok(p(1))
        );
        assert_eq!(authorize_admin(p(2), &admins, |c| *c == p(2)), Ok(p(2)));
        assert_eq!(
            authorize_admin(p(3), &admins, |_| false),
            Err(PayoutError::NotAuthorized)
        );
    }
}
