//! The few raw system calls this crate needs that socket2 and nix do not wrap: setsockopt and
//! getsockopt with the kernel's mroute structs, and in/out ioctls. Each is a small function
//! with one `unsafe` block.

use core::ffi::{c_int, c_ulong, c_void};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Plain-old-data structs that may be handed to the kernel by pointer and filled in by it:
/// `#[repr(C)]`, `Copy`, no pointers, every bit pattern valid.
///
/// # Safety
/// Implementors must satisfy the above; the helpers below rely on it.
pub(crate) unsafe trait Pod: Copy {}

// SAFETY: all of these are `#[repr(C)]` structs of integers and integer arrays (see sys.rs).
unsafe impl Pod for crate::sys::vifctl {}
// SAFETY: as above.
unsafe impl Pod for crate::sys::mfcctl {}
// SAFETY: as above.
unsafe impl Pod for crate::sys::sioc_sg_req {}
// SAFETY: as above.
unsafe impl Pod for crate::sys::sioc_vif_req {}
// SAFETY: as above.
unsafe impl Pod for crate::sys::mif6ctl {}
// SAFETY: as above.
unsafe impl Pod for crate::sys::mf6cctl {}
// SAFETY: as above.
unsafe impl Pod for crate::sys::sioc_sg_req6 {}
// SAFETY: as above.
unsafe impl Pod for crate::sys::sioc_mif_req6 {}
// SAFETY: as above.
unsafe impl Pod for crate::sys::icmp6_filter {}
// SAFETY: `#[repr(C)]` struct of two `in_addr` (u32) and an int.
unsafe impl Pod for libc::ip_mreqn {}
// SAFETY: a primitive integer.
unsafe impl Pod for c_int {}
// SAFETY: a primitive integer.
unsafe impl Pod for u32 {}
// SAFETY: a primitive integer.
unsafe impl Pod for u16 {}

/// `setsockopt(fd, level, name, &value, sizeof value)`.
pub(crate) fn setsockopt<T: Pod>(fd: BorrowedFd<'_>, level: c_int, name: c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live reference to a Pod value of exactly `size_of::<T>()` bytes; the
    // kernel only reads that many bytes from it. `fd` is a valid open descriptor for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<c_void>(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `getsockopt(fd, level, name, &value, &len)`; fails if the kernel returns a short value.
pub(crate) fn getsockopt<T: Pod>(fd: BorrowedFd<'_>, level: c_int, name: c_int) -> io::Result<T> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` provides `len` writable bytes and `len` is a valid in/out length; `fd` is
    // valid for the call.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, value.as_mut_ptr().cast::<c_void>(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != size_of::<T>() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "getsockopt returned a short value"));
    }
    // SAFETY: zero-initialised, then filled by the kernel; every bit pattern is valid for Pod.
    Ok(unsafe { value.assume_init() })
}

/// `ioctl(fd, request, &mut arg)` for requests that read and write a struct.
pub(crate) fn ioctl_inout<T: Pod>(fd: BorrowedFd<'_>, request: c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a live, exclusive reference to a Pod struct the request expects; the
    // kernel reads and writes at most `size_of::<T>()` bytes through it. `fd` is valid.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, (arg as *mut T).cast::<c_void>()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `ioctl(fd, request, value)` for requests that take an integer argument by value.
pub(crate) fn ioctl_value(fd: BorrowedFd<'_>, request: c_ulong, value: c_ulong) -> io::Result<()> {
    // SAFETY: the request takes its argument by value; no memory is passed. `fd` is valid.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, value) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Registers `inner` with the current tokio runtime (panics outside one).
///
/// tokio 1.53.3 deprecated `AsyncFd::with_interest` in favour of the `unsafe`
/// `register_with_interest`, because a `T` whose `as_raw_fd()` could change or close would be
/// unsound. Every `T` used here owns its descriptor for its whole life (`socket2::Socket`,
/// `netlink_sys::Socket`, [`crate::tun::Tun`]), which is exactly that method's safety
/// condition; the deprecated constructor keeps the workspace's `tokio = "1.47"` requirement.
#[allow(deprecated)]
pub(crate) fn async_fd<T: AsRawFd>(inner: T, interest: tokio::io::Interest) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    tokio::io::unix::AsyncFd::with_interest(inner, interest)
}
