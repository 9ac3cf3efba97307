//! Start-up refusals: a second node on a data directory that is in use.

use crate::harness::*;

#[test]
fn a_second_node_on_the_same_data_directory_is_refused_clearly() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let before = node.health();
    let port = free_port().to_string();
    let out = cli_within(
        &[
            "up",
            "--data-dir",
            &node.dir.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
        LIMIT,
    );
    assert!(!out.status.success(), "a second node started\n{}", show(&out));
    assert!(stderr(&out).contains("in use by another process"), "{}", show(&out));
    // The running node is unaffected.
    assert_eq!(node.health(), before);
}
