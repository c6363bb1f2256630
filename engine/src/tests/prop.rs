#[test]
fn placeholder_prop() {}
