//! Child processes that end with the test process, however it ends. The one module with
//! `unsafe`: the code that runs in the child between fork and exec.
#![allow(unsafe_code)]

use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock, mpsc};

/// What the spawning thread takes: a command, and where to send the child it started.
type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Starts `command` so that the kernel kills it (SIGKILL) when this process ends, however it
/// ends: also when its handle sits in a `static` that is never dropped, or the test panics
/// in a way that skips destructors. The kernel ties the signal to the thread that forked the
/// child, not to the process, so every such child is forked by one thread that lives as long
/// as the process.
pub fn spawn_tied(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("herald-tests-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(spawn_with_death_signal(&mut command));
                }
            })
            .expect("starting the spawner thread");
        Mutex::new(requests)
    });
    let (reply, child) = mpsc::channel();
    spawner
        .lock()
        .expect("not poisoned")
        .send((command, reply))
        .expect("the spawner thread runs as long as the process");
    child.recv().expect("the spawner thread answers")
}

fn spawn_with_death_signal(command: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe, as code between fork and exec must be.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the signal was armed.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("the test process has already ended"));
            }
            Ok(())
        })
    };
    command.spawn()
}
