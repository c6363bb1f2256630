//! Generic journaling (records) through the service and the typed client.

use icjournal::{ReportedResult, Status};
use icjournal_client::{RecordIntentArgs, ReportResultArgs};
use icjournal_tests::*;

#[test]
fn should_record_intent_and_report_result() {
    let s = Setup::new();
    let c = s.client(user(1));
    let id = run(c.record_intent(RecordIntentArgs {
        label: "order".into(),
        payload: b"order-1".to_vec(),
        lock_key: Some("order-1".into()),
    }))
    .unwrap();
    let e = run(c.get_entry(id)).unwrap();
    assert_eq!(e.status, Status::Pending);
    let st = run(c.report_result(ReportResultArgs {
        entry_id: id,
        result: ReportedResult::Succeeded {
            block_index: None,
            reply: b"ok".to_vec(),
        },
    }))
    .unwrap();
    assert_eq!(st, Status::Succeeded);
}
