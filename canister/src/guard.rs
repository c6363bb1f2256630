//! Authentication and authorization guards (I7), called at the top of every endpoint
//! body. `canister_inspect_message` repeats the cheap ones as a first filter only (see
//! `inspect`), because it does not run for inter-canister calls and a malicious node may skip it.

use candid::Principal;
use icjournal::JournalError;
use icjournal_client::{ServiceConfig, ServiceError};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Who is calling, captured once at the start of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    pub caller: Principal,
    /// `ic0.is_controller(caller)`.
    pub is_controller: bool,
    /// Cycles the call carries and nobody accepted yet (`ic0.msg_cycles_available128`).
    pub cycles_available: u128,
}

impl Ctx {
    pub fn new(caller: Principal, is_controller: bool) -> Self {
        Ctx {
            caller,
            is_controller,
            cycles_available: 0,
        }
    }

    pub fn with_cycles(mut self, cycles: u128) -> Self {
        self.cycles_available = cycles;
        self
    }
}

/// Any authenticated caller: everything but the anonymous principal.
pub fn authenticated(ctx: &Ctx) -> Result<Principal, ServiceError> {
    if ctx.caller == Principal::anonymous() {
        return Err(ServiceError::Journal(JournalError::AnonymousCaller));
    }
    Ok(ctx.caller)
}

/// True for configured admins and controllers (never the anonymous principal).
pub fn is_operator(ctx: &Ctx, config: &ServiceConfig) -> bool {
    ctx.caller != Principal::anonymous()
        && (ctx.is_controller || config.admins.contains(&ctx.caller))
}

/// Operator endpoints: admins and controllers.
pub fn operator(ctx: &Ctx, config: &ServiceConfig) -> Result<Principal, ServiceError> {
    authenticated(ctx)?;
    if !is_operator(ctx, config) {
        return Err(ServiceError::NotAuthorized {
            required: "operator (admin or controller)".into(),
        });
    }
    Ok(ctx.caller)
}

/// Controller-only endpoints (the view with the cycles balance).
pub fn controller(ctx: &Ctx) -> Result<Principal, ServiceError> {
    authenticated(ctx)?;
    if !ctx.is_controller {
        return Err(ServiceError::NotAuthorized {
            required: "controller".into(),
        });
    }
    Ok(ctx.caller)
}

/// The self-call commit method: only the canister itself.
pub fn self_only(ctx: &Ctx, self_id: Principal) -> Result<(), ServiceError> {
    if ctx.caller != self_id {
        return Err(ServiceError::NotAuthorized {
            required: "the canister itself".into(),
        });
    }
    Ok(())
}

/// Counters of flows the service is executing (heap only: an upgrade waits for no call
/// context, and the counters restart at zero with the new heap).
#[derive(Default, Debug)]
pub struct InFlight {
    per_caller: RefCell<BTreeMap<Principal, u32>>,
    total: Cell<u32>,
}

impl InFlight {
    pub fn total(&self) -> u32 {
        self.total.get()
    }

    pub fn of(&self, caller: &Principal) -> u32 {
        self.per_caller.borrow().get(caller).copied().unwrap_or(0)
    }
}

/// Holds one in-flight slot of a caller; released on drop — also when the flow's future is
/// dropped by a trap's cleanup, so a trapped callback cannot leak a slot.
#[must_use]
pub struct InFlightGuard {
    counters: Rc<InFlight>,
    caller: Principal,
}

impl InFlightGuard {
    pub fn acquire(
        counters: &Rc<InFlight>,
        caller: Principal,
        per_caller_max: u32,
        total_max: u32,
    ) -> Result<Self, ServiceError> {
        if counters.total.get() >= total_max {
            return Err(ServiceError::Journal(
                JournalError::TemporarilyUnavailable {
                    message: format!("{total_max} flows in flight; retry later"),
                },
            ));
        }
        let mine = counters.of(&caller);
        if mine >= per_caller_max {
            return Err(ServiceError::Journal(JournalError::QuotaExceeded {
                owner: caller,
                limit: "max_in_flight_per_caller".into(),
                max: per_caller_max as u64,
            }));
        }
        counters.per_caller.borrow_mut().insert(caller, mine + 1);
        counters.total.set(counters.total.get() + 1);
        Ok(InFlightGuard {
            counters: counters.clone(),
            caller,
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut m = self.counters.per_caller.borrow_mut();
        if let Some(n) = m.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.caller);
            }
        }
        self.counters
            .total
            .set(self.counters.total.get().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_config;

    fn p(n: u8) -> Principal {
        Principal::from_slice(&[n, 2])
    }

    #[test]
    fn anonymous_is_rejected_everywhere() {
        let anon = Ctx::new(Principal::anonymous(), false);
        // Even if the anonymous principal were reported as controller or listed as admin.
        let anon_ctrl = Ctx::new(Principal::anonymous(), true);
        let mut cfg = default_config();
        cfg.admins.push(Principal::anonymous());
        let is_anon = |r: Result<Principal, ServiceError>| {
            r == Err(ServiceError::Journal(JournalError::AnonymousCaller))
        };
        assert!(is_anon(authenticated(&anon)));
        assert!(is_anon(operator(&anon, &cfg)));
        assert!(is_anon(operator(&anon_ctrl, &cfg)));
        assert!(is_anon(controller(&anon_ctrl)));
        assert!(!is_operator(&anon_ctrl, &cfg));
    }

    #[test]
    fn roles() {
        let mut cfg = default_config();
        cfg.admins.push(p(1));
        let admin = Ctx::new(p(1), false);
        let ctrl = Ctx::new(p(2), true);
        let stranger = Ctx::new(p(3), false);
        assert_eq!(operator(&admin, &cfg), Ok(p(1)));
        assert_eq!(operator(&ctrl, &cfg), Ok(p(2)));
        assert!(matches!(
            operator(&stranger, &cfg),
            Err(ServiceError::NotAuthorized { .. })
        ));
        assert!(matches!(
            controller(&admin),
            Err(ServiceError::NotAuthorized { .. })
        ));
        assert_eq!(controller(&ctrl), Ok(p(2)));
        assert_eq!(authenticated(&stranger), Ok(p(3)));
        assert!(self_only(&stranger, p(9)).is_err());
        assert!(self_only(&Ctx::new(p(9), false), p(9)).is_ok());
    }

    #[test]
    fn in_flight_limits_and_release_on_drop() {
        let c = Rc::new(InFlight::default());
        let a1 = InFlightGuard::acquire(&c, p(1), 2, 3).unwrap();
        let a2 = InFlightGuard::acquire(&c, p(1), 2, 3).unwrap();
        assert!(matches!(
            InFlightGuard::acquire(&c, p(1), 2, 3),
            Err(ServiceError::Journal(JournalError::QuotaExceeded {
                max: 2,
                ..
            }))
        ));
        let b1 = InFlightGuard::acquire(&c, p(2), 2, 3).unwrap();
        assert!(matches!(
            InFlightGuard::acquire(&c, p(3), 2, 3),
            Err(ServiceError::Journal(
                JournalError::TemporarilyUnavailable { .. }
            ))
        ));
        assert_eq!((c.total(), c.of(&p(1))), (3, 2));
        drop(a1);
        drop(b1);
        assert_eq!((c.total(), c.of(&p(1)), c.of(&p(2))), (1, 1, 0));
        let _a3 = InFlightGuard::acquire(&c, p(1), 2, 3).unwrap();
        drop(a2);
        assert_eq!(c.total(), 1);
    }
}
