//! The allocator settings of `tokenlens::memory` in a process of their own (the test harness's
//! other tests would allocate beside it): a tensor-sized buffer, once freed, stays in the process
//! for the next one instead of going back to the OS.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_buffers_stay_in_the_process() {
    assert!(tokenlens::memory::keep_freed_memory());
    let mapped = || unsafe { libc::mallinfo2() }.hblkhd;
    let free_in_heaps = || unsafe { libc::mallinfo2() }.fordblks;
    // 8 MiB: an attention map of 16 sequences × 12 heads × 128² floats is 12 MiB.
    const BYTES: usize = 8 << 20;
    let before = mapped();
    let buffer = vec![1u8; BYTES];
    std::hint::black_box(&buffer);
    assert_eq!(
        mapped(),
        before,
        "the buffer was mapped afresh instead of taken from a heap"
    );
    drop(buffer);
    assert!(
        free_in_heaps() >= BYTES,
        "the freed buffer went back to the OS: {} bytes free in the heaps",
        free_in_heaps()
    );
}
