use super::*;

fn wat(src: &str) -> Vec<u8> {
    crate::wat(src)
}

#[test]
fn smoke() {
    let mut sim = Simulator::new();
    let c = sim.create_canister();
    let w = wat(r#"(module
      (import "ic0" "msg_reply" (func $reply))
      (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
      (memory 1)
      (data (i32.const 0) "hi")
      (func (export "canister_update hello") (call $append (i32.const 0) (i32.const 2)) (call $reply)))"#);
    sim.install_canister(c, w, vec![], None).unwrap();
    assert_eq!(
        sim.update_call(c, Principal::anonymous(), "hello", vec![])
            .unwrap(),
        b"hi"
    );
}
