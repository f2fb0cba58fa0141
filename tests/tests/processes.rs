//! Every process a test starts ends when the test binary ends, also when nothing drops its
//! [`Process`] (a controller shared by a file's tests lives in a `static`).

use std::process::Command;
use std::time::{Duration, Instant};

use herald_tests::Process;

const CHILD: &str = "HERALD_TESTS_LEAK_A_PROCESS";

#[test]
fn a_process_left_in_a_static_ends_with_the_test_binary() {
    if std::env::var_os(CHILD).is_some() {
        // The inner run: start a long sleep, keep its Process from ever being dropped, exit.
        let dir = tempfile::tempdir().unwrap().keep();
        let mut sleep = Command::new("sleep");
        sleep.arg("600");
        let process = Process::spawn("sleep", sleep, dir.join("sleep.log"));
        println!("pid {}", process.id());
        std::mem::forget(process);
        std::process::exit(0);
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_process_left_in_a_static_ends_with_the_test_binary",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .unwrap_or_else(|| panic!("no pid in {stdout}"))
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    // Gone, or a zombie its new parent has yet to reap.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
    };
    while alive() {
        assert!(
            Instant::now() < deadline,
            "sleep (pid {pid}) outlived the test binary that started it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
