//! The status machine (`docs/design.md`, "Status machine"). `check` is the single authority on legal edges; every status
//! change in the engine goes through `Journal::transition`, which calls it.

use crate::types::Status::{self, *};

/// Who asks for the change: the engine's own flows, or an operator acting on the manual queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    Engine,
    Admin,
}

/// Is `from -> to` legal for `actor`?
///
/// Results are final (I4): no edge leaves a terminal status. The only way out of
/// `ManualReview` is an (audited) admin action; the engine itself may only put entries there.
pub fn is_legal(from: Status, to: Status, actor: Actor) -> bool {
    match actor {
        Actor::Engine => matches!(
            (from, to),
            (Pending, Succeeded)
                | (Pending, Failed)
                | (Pending, Unknown)
                | (Pending, ManualReview)
                | (Pending, Compensating)
                | (Unknown, Recovering)
                | (Unknown, Succeeded)
                | (Unknown, Failed)
                | (Unknown, ManualReview)
                | (Unknown, Compensating)
                | (Recovering, Succeeded)
                | (Recovering, Failed)
                | (Recovering, Unknown)
                | (Recovering, ManualReview)
                | (Recovering, Compensating)
                | (Compensating, Compensated)
                | (Compensating, Unknown)
                | (Compensating, ManualReview)
        ),
        Actor::Admin => matches!(
            (from, to),
            (ManualReview, Unknown)
                | (ManualReview, Succeeded)
                | (ManualReview, Failed)
                | (ManualReview, Compensating)
                | (ManualReview, Cancelled)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_have_no_outgoing_edges() {
        for from in Status::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in Status::ALL {
                for actor in [Actor::Engine, Actor::Admin] {
                    assert!(!is_legal(from, to, actor), "{from:?}->{to:?} by {actor:?}");
                }
            }
        }
    }

    #[test]
    fn only_admin_leaves_manual_review_and_only_from_there() {
        for to in Status::ALL {
            assert!(!is_legal(ManualReview, to, Actor::Engine));
        }
        for from in Status::ALL.into_iter().filter(|s| *s != ManualReview) {
            for to in Status::ALL {
                assert!(!is_legal(from, to, Actor::Admin), "{from:?}->{to:?}");
            }
        }
    }

    #[test]
    fn no_self_loops_and_nothing_returns_to_pending() {
        for s in Status::ALL {
            for a in [Actor::Engine, Actor::Admin] {
                assert!(!is_legal(s, s, a));
                assert!(!is_legal(s, Pending, a));
            }
        }
    }

    /// The complete edge table, so any change to the machine is a deliberate test change.
    #[test]
    fn exact_edge_table() {
        let mut engine = vec![];
        let mut admin = vec![];
        for f in Status::ALL {
            for t in Status::ALL {
                if is_legal(f, t, Actor::Engine) {
                    engine.push((f, t));
                }
                if is_legal(f, t, Actor::Admin) {
                    admin.push((f, t));
                }
            }
        }
        assert_eq!(engine.len(), 18);
        assert_eq!(
            admin,
            vec![
                (ManualReview, Succeeded),
                (ManualReview, Failed),
                (ManualReview, Unknown),
                (ManualReview, Compensating),
                (ManualReview, Cancelled)
            ]
        );
        // Every unresolved non-manual status can reach ManualReview (I2: never silently stuck).
        for s in [Pending, Unknown, Recovering, Compensating] {
            assert!(is_legal(s, ManualReview, Actor::Engine));
        }
        // Compensated is reachable only from Compensating; Cancelled only by an operator.
        assert!(engine
            .iter()
            .filter(|(_, t)| *t == Compensated)
            .all(|(f, _)| *f == Compensating));
        assert!(!engine.iter().any(|(_, t)| *t == Cancelled));
    }
}
