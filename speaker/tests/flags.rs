//! Bad timings are refused at start, naming the flag, before the speaker touches anything.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_herald-speaker"))
        .args(["--node-name", "node-a", "--kubeconfig", "/nonexistent"])
        .args(args)
        .output()
        .expect("the speaker runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn zero_missing_units_and_inverted_timings_are_refused_with_the_flag_named() {
    for (args, expected) in [
        (
            &["--refresh", "0s"][..],
            "invalid value '0s' for '--refresh <REFRESH>': \"0s\" is zero",
        ),
        (
            &["--burst-interval", "0ms"][..],
            "invalid value '0ms' for '--burst-interval",
        ),
        (
            &["--heartbeat-interval", "0s"][..],
            "invalid value '0s' for '--heartbeat-interval",
        ),
        (&["--probe-wait", "300"][..], "\"300\" is not a duration"),
        (
            &["--heartbeat-interval", "5s"][..],
            "--heartbeat-duration (3s) must be longer than --heartbeat-interval (5s)",
        ),
        (
            &["--probe-period", "40ms"][..],
            "--probe-period (40ms) must be longer than --probe-rtt (40ms)",
        ),
    ] {
        let (ok, text) = run(args);
        assert!(!ok && text.contains(expected), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{args:?}: {text}");
    }
    // Good timings get past the checks (and fail later, on the missing kubeconfig).
    let (ok, text) = run(&["--refresh", "10s", "--heartbeat-duration", "2s"]);
    assert!(!ok && text.contains("--kubeconfig /nonexistent"), "{text}");
}
