//! Scheduling the responders' thread ahead of ordinary work, so that a reply never waits for
//! a busy CPU. The one other module with `unsafe`: libc's `sched_setscheduler`.
#![allow(unsafe_code)]

use std::io;

/// Moves the calling thread to the lowest real-time priority (SCHED_FIFO 1): a frame that
/// wakes it is then handled at once, ahead of any ordinary thread on the CPU (compilers,
/// watch processing), instead of after their time slice. It still sleeps between frames, the
/// kernel keeps real-time threads to 95% of a CPU, and threads it starts do not inherit the
/// priority. Needs CAP_SYS_NICE.
pub fn realtime() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid sched_param that lives for the call; pid 0 is the calling
    // thread.
    let result = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
