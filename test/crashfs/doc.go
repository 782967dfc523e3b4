// Package crashfs is a crash-test filesystem in the spirit of LazyFS: a
// go-fuse filesystem over a backing directory that keeps everything not yet
// made durable in memory and drops it when the test "crashes" it. kill -9
// alone cannot catch a missing fsync, because the kernel's page cache
// outlives the process; Crash also discards what only the page cache had.
//
// # What is durable
//
// The backing directory holds exactly the durable state; the live state
// (what processes see through the mount) is that plus, in memory, the
// changes since the last fsync that covered them.
//
//   - File data and size: written (write, pwrite, truncate, fallocate,
//     writes through a shared mapping) but not yet covered by fsync or
//     fdatasync of that file is lost. fsync and fdatasync are treated alike
//     (the size is data). O_SYNC/O_DSYNC writes and RWF_DSYNC are durable,
//     because the kernel sends an fsync after them. close() syncs nothing.
//     syncfs(2) and sync(2) sync nothing here: the kernel does not pass them
//     to a FUSE server (FUSE_SYNCFS is sent to virtiofs only), so software
//     relying on them fails a crash test. sync_file_range(2) is not an
//     integrity operation on any filesystem and is not modeled either.
//     Dirty data is tracked and dropped in whole 4 KiB pages.
//   - Namespace operations (create, mkdir, symlink, link, unlink, rmdir,
//     rename including RENAME_EXCHANGE and RENAME_NOREPLACE) and mode or
//     owner changes form one ordered log, like a journaling filesystem's
//     journal: when an fsync makes an operation durable, every operation
//     before it becomes durable too, so the durable namespace is always a
//     state the live one went through. Which fsync makes an operation
//     durable is the Model:
//   - Ordered (default): an fsync of the parent directory (FUSE_FSYNCDIR),
//     or an fsync/fdatasync of a file or directory the operation created,
//     renamed, linked, unlinked or chmod-ed, issued after it. That is what
//     ext4 (data=ordered), XFS and btrfs guarantee for a file's own name,
//     and it is stricter than they are: ext4 commits its whole journal on
//     any fsync, this model only the prefix up to the fsynced inode's last
//     operation. Renaming a file that was never fsynced over another one
//     makes the new name durable with whatever data the file had at its
//     last fsync (nothing): the zero-length-file bug that "write temp file,
//     fsync, rename" avoids is caught, because crashfs does not copy ext4's
//     auto_da_alloc heuristic.
//   - Strict (POSIX): only an fsync of the parent directory makes an entry
//     change durable. A program that creates a file, fsyncs it and never
//     fsyncs its directory loses the file. Mode and owner changes also
//     wait for a later directory fsync in this model.
//   - In both models the log's order means that any fsync that makes an
//     operation durable also makes every earlier one durable, in any
//     directory, as on ext4 and XFS (ext2 or ext4 without a journal would
//     not): a missing directory fsync shows only when no later fsync covers
//     it. Tests that look for one crash before anything else is fsynced.
//   - Times (atime, mtime, ctime) are not modeled: they come back from the
//     backing directory after a crash.
//
// # How
//
// Each regular-file inode has a store file in the backing directory
// (.crashfs-inodes/<n>, hidden from the mount) holding its durable bytes;
// the durable names are hard links to it, so a file keeps its durable data
// across renames whichever name becomes durable. Unsynced pages live in
// memory; reads merge them over the store file. An fsync writes the dirty
// pages into the store file and replays the durable part of the namespace
// log on the backing directory with the same syscalls. A crash unmounts
// (the kernel's caches of the mount are gone with it), drops the memory,
// and mounts again: the new boot loads the backing directory, and store
// files without a durable name are deleted.
//
// The mount uses cached I/O without FOPEN_DIRECT_IO and without the
// writeback cache: writes reach the server synchronously and also fill the
// page cache, so mmap reads (bbolt reads its file through a shared
// read-only mapping and writes with pwrite + fdatasync) see every write.
// Locks (flock, fcntl) are the kernel's local locks.
//
// Processes using the mount must be dead before Crash: Process.Kill9 and
// FS.KillAndCrash do that. Mounting needs root and /dev/fuse; New in a test
// skips without them, and fails under CI=true.
package crashfs
