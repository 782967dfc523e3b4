package crashfs_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/alcove-io/alcove/test/crashfs"
)

// gone marks a name that must not exist after the crash.
const gone = "\x00gone"

func write(t *testing.T, p, data string, flags int) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|flags, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return f
}

// unsynced writes p and closes it without fsync.
func unsynced(t *testing.T, p, data string) {
	t.Helper()
	if err := write(t, p, data, os.O_TRUNC).Close(); err != nil {
		t.Fatal(err)
	}
}

// synced writes p and fsyncs the file (not its directory).
func synced(t *testing.T, p, data string) {
	t.Helper()
	f := write(t, p, data, os.O_TRUNC)
	fsync(t, f)
}

// fsync fsyncs and closes f (closed also on failure: a file left open on
// the mount at exit would hang this process, which serves the mount).
func fsync(t *testing.T, f *os.File) {
	t.Helper()
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

func fsyncPath(t *testing.T, p string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	fsync(t, f)
}

// durable writes p, fsyncs it and its directory: durable in every model.
func durable(t *testing.T, p, data string) {
	t.Helper()
	synced(t, p, data)
	fsyncPath(t, filepath.Dir(p))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCrashSemantics(t *testing.T) {
	type want map[string]string
	tests := []struct {
		name            string
		run             func(t *testing.T, m string)
		ordered, strict want // contents after the crash; gone: must not exist
	}{{
		name:    "unsynced new file is lost",
		run:     func(t *testing.T, m string) { unsynced(t, m+"/a", "x") },
		ordered: want{"a": gone}, strict: want{"a": gone},
	}, {
		name:    "fsynced new file: its name needs the directory fsync in strict",
		run:     func(t *testing.T, m string) { synced(t, m+"/a", "x") },
		ordered: want{"a": "x"}, strict: want{"a": gone},
	}, {
		name: "directory fsync without file fsync keeps the name, not the data",
		run: func(t *testing.T, m string) {
			unsynced(t, m+"/a", "x")
			fsyncPath(t, m)
		},
		ordered: want{"a": ""}, strict: want{"a": ""},
	}, {
		name: "overwrite, truncate and append after the last fsync are lost",
		run: func(t *testing.T, m string) {
			durable(t, m+"/a", "hello")
			durable(t, m+"/b", "hello")
			durable(t, m+"/c", "hello")
			f := write(t, m+"/a", "J", 0)
			must(t, f.Close())
			must(t, os.Truncate(m+"/b", 2))
			must(t, write(t, m+"/c", " world", os.O_APPEND).Close())
		},
		ordered: want{"a": "hello", "b": "hello", "c": "hello"}, strict: want{"a": "hello", "b": "hello", "c": "hello"},
	}, {
		name: "truncate then fsync is durable",
		run: func(t *testing.T, m string) {
			durable(t, m+"/a", "hello")
			must(t, os.Truncate(m+"/a", 2))
			fsyncPath(t, m+"/a")
		},
		ordered: want{"a": "he"}, strict: want{"a": "he"},
	}, {
		name: "rename without fsync is lost",
		run: func(t *testing.T, m string) {
			durable(t, m+"/a", "A")
			durable(t, m+"/b", "B")
			must(t, os.Rename(m+"/a", m+"/b"))
		},
		ordered: want{"a": "A", "b": "B"}, strict: want{"a": "A", "b": "B"},
	}, {
		name: "rename then fsync of the renamed file",
		run: func(t *testing.T, m string) {
			durable(t, m+"/a", "A")
			durable(t, m+"/b", "B")
			must(t, os.Rename(m+"/a", m+"/b"))
			fsyncPath(t, m+"/b")
		},
		ordered: want{"a": gone, "b": "A"}, strict: want{"a": "A", "b": "B"},
	}, {
		name: "write, fsync, rename, directory fsync",
		run: func(t *testing.T, m string) {
			durable(t, m+"/b", "B")
			synced(t, m+"/tmp", "new")
			must(t, os.Rename(m+"/tmp", m+"/b"))
			fsyncPath(t, m)
		},
		ordered: want{"tmp": gone, "b": "new"}, strict: want{"tmp": gone, "b": "new"},
	}, {
		name: "rename of a file never fsynced leaves an empty file",
		run: func(t *testing.T, m string) {
			durable(t, m+"/b", "B")
			unsynced(t, m+"/tmp", "new")
			must(t, os.Rename(m+"/tmp", m+"/b"))
			fsyncPath(t, m)
		},
		ordered: want{"tmp": gone, "b": ""}, strict: want{"tmp": gone, "b": ""},
	}, {
		name: "unlink needs an fsync",
		run: func(t *testing.T, m string) {
			durable(t, m+"/a", "A")
			durable(t, m+"/b", "B")
			must(t, os.Remove(m+"/a"))
			must(t, os.Remove(m+"/b"))
			fsyncPath(t, m) // covers both: one ordered log
			durable(t, m+"/c", "C")
			must(t, os.Remove(m+"/c"))
		},
		ordered: want{"a": gone, "b": gone, "c": "C"}, strict: want{"a": gone, "b": gone, "c": "C"},
	}, {
		name: "new directories come with a file fsync only in ordered",
		run: func(t *testing.T, m string) {
			must(t, os.MkdirAll(m+"/d/e", 0o755))
			synced(t, m+"/d/e/f", "x")
		},
		ordered: want{"d/e/f": "x"}, strict: want{"d": gone},
	}, {
		name: "strict: every new directory's parent fsynced",
		run: func(t *testing.T, m string) {
			must(t, os.MkdirAll(m+"/d/e", 0o755))
			fsyncPath(t, m)
			fsyncPath(t, m+"/d")
			durable(t, m+"/d/e/f", "x")
		},
		ordered: want{"d/e/f": "x"}, strict: want{"d/e/f": "x"},
	}, {
		name: "directory rename moves its durable subtree",
		run: func(t *testing.T, m string) {
			must(t, os.Mkdir(m+"/d", 0o755))
			fsyncPath(t, m)
			durable(t, m+"/d/f", "x")
			must(t, os.Rename(m+"/d", m+"/e"))
			fsyncPath(t, m)
			durable(t, m+"/e/g", "y")
		},
		ordered: want{"d": gone, "e/f": "x", "e/g": "y"}, strict: want{"d": gone, "e/f": "x", "e/g": "y"},
	}, {
		name: "hard links share the inode's durable data",
		run: func(t *testing.T, m string) {
			durable(t, m+"/a", "A")
			must(t, os.Link(m+"/a", m+"/c"))
			fsyncPath(t, m)
			f := write(t, m+"/c", "Z", 0)
			fsync(t, f)
			must(t, os.Remove(m+"/a"))
		},
		ordered: want{"a": "Z", "c": "Z"}, strict: want{"a": "Z", "c": "Z"},
	}, {
		name: "RENAME_EXCHANGE",
		run: func(t *testing.T, m string) {
			durable(t, m+"/a", "A")
			durable(t, m+"/b", "B")
			must(t, unix.Renameat2(unix.AT_FDCWD, m+"/a", unix.AT_FDCWD, m+"/b", unix.RENAME_EXCHANGE))
			fsyncPath(t, m)
		},
		ordered: want{"a": "B", "b": "A"}, strict: want{"a": "B", "b": "A"},
	}, {
		name: "O_SYNC writes are durable (the kernel sends an fsync)",
		run: func(t *testing.T, m string) {
			durable(t, m+"/a", "")
			must(t, write(t, m+"/a", "x", os.O_SYNC).Close())
		},
		ordered: want{"a": "x"}, strict: want{"a": "x"},
	}, {
		name: "fdatasync is enough for data",
		run: func(t *testing.T, m string) {
			durable(t, m+"/a", "")
			f := write(t, m+"/a", "data", 0)
			must(t, unix.Fdatasync(int(f.Fd())))
			must(t, f.Close())
		},
		ordered: want{"a": "data"}, strict: want{"a": "data"},
	}}
	for _, model := range []crashfs.Model{crashfs.Ordered, crashfs.Strict} {
		for _, tc := range tests {
			t.Run(model.String()+"/"+tc.name, func(t *testing.T) {
				fsys := crashfs.New(t, crashfs.Options{Model: model})
				tc.run(t, fsys.Path())
				rep, err := fsys.Crash()
				if err != nil {
					t.Fatal(err)
				}
				t.Log(rep)
				w := tc.ordered
				if model == crashfs.Strict {
					w = tc.strict
				}
				for name, content := range w {
					got, err := os.ReadFile(fsys.Path(name))
					switch {
					case content == gone && !errors.Is(err, os.ErrNotExist):
						t.Errorf("%s after the crash: %q, %v; want it gone", name, got, err)
					case content != gone && (err != nil || string(got) != content):
						t.Errorf("%s after the crash: %q, %v; want %q", name, got, err, content)
					}
				}
			})
		}
	}
}

// TestUnmountWithOpenFile: a file still open makes Crash and Unmount fail,
// and Unmount aborts the connection so that the holder gets errors rather
// than hanging.
func TestUnmountWithOpenFile(t *testing.T) {
	fsys := crashfs.New(t, crashfs.Options{})
	f := write(t, fsys.Path("a"), "x", 0)
	defer f.Close()
	if _, err := fsys.Crash(); err == nil {
		t.Fatal("crash with an open file succeeded")
	}
	if err := fsys.Unmount(); err == nil {
		t.Fatal("unmount with an open file succeeded")
	}
	if _, err := f.WriteString("y"); !errors.Is(err, unix.ENOTCONN) {
		t.Fatalf("write after the abort: %v, want ENOTCONN", err)
	}
}

// TestPunchHole: a punched range (the worker's block store punches dropped
// blocks) reads as zeros and is a hole for SEEK_HOLE/SEEK_DATA through the
// mount; after a crash it is one only if an fsync followed the punch.
func TestPunchHole(t *testing.T) {
	for _, synced := range []bool{false, true} {
		t.Run(fmt.Sprintf("fsync=%v", synced), func(t *testing.T) {
			fsys := crashfs.New(t, crashfs.Options{})
			data := bytes.Repeat([]byte{'d'}, 3*4096)
			durable(t, fsys.Path("f"), string(data))
			f, err := os.OpenFile(fsys.Path("f"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			check := func(when string, wantHole bool) {
				t.Helper()
				hole, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(data))
				if _, err := f.ReadAt(got, 0); err != nil {
					t.Fatal(err)
				}
				zeros := bytes.Equal(got[4096:8192], make([]byte, 4096))
				if wantHole != (hole == 4096) || wantHole != zeros || !bytes.Equal(got[:4096], data[:4096]) {
					t.Fatalf("%s: first hole at %d, middle page zero %v; want a hole there: %v", when, hole, zeros, wantHole)
				}
			}
			err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 4096)
			if err == nil && synced {
				err = f.Sync()
			}
			if err != nil {
				f.Close()
				t.Fatal(err)
			}
			check("before the crash", true)
			must(t, f.Close())
			if _, err := fsys.Crash(); err != nil {
				t.Fatal(err)
			}
			if f, err = os.Open(fsys.Path("f")); err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			check("after the crash", synced)
		})
	}
}
