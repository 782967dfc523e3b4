package main

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/meta"
)

func fsCopyFromLocal(g *globals) *cobra.Command {
	var writeType, blockSize string
	var overwrite bool
	cmd := &cobra.Command{
		Use:     "copyFromLocal [--write-type T] [--block-size S] LOCAL_SRC ALCOVE_DST",
		Aliases: []string{"put"},
		Short:   "Copy a local file or directory into Alcove",
		Args:    exactArgs(2, "LOCAL_SRC and ALCOVE_DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts client.WriteOptions
			if writeType != "" {
				wt, err := meta.ParseWriteType(writeType)
				if err != nil {
					return usageError{err}
				}
				opts.WriteType = wt
			}
			if blockSize != "" {
				bs, err := conf.ParseSize(blockSize)
				if err != nil {
					return usageError{err}
				}
				opts.BlockSize = bs
			}
			opts.Overwrite = overwrite
			src := args[0]
			st, err := os.Stat(src)
			if err != nil {
				return fmt.Errorf("local source: %w", err)
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				dst := mustClean(args[1])
				if info, err := c.GetStatus(ctx, dst); err == nil && info.GetFolder() {
					dst = meta.Join(info.GetPath(), filepath.Base(src))
				}
				if !st.IsDir() {
					n, err := putFile(ctx, c, src, dst, opts)
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "Copied file://%s to %s (%d bytes)\n", absPath(src), dst, n)
					return nil
				}
				return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
					if err != nil {
						return err
					}
					rel, _ := filepath.Rel(src, p)
					target := meta.Join(dst, filepath.ToSlash(rel))
					if d.IsDir() {
						_, err := c.Mkdir(ctx, target, true, true, 0)
						return err
					}
					if !d.Type().IsRegular() {
						return nil
					}
					n, err := putFile(ctx, c, p, target, opts)
					if err == nil {
						fmt.Fprintf(cmd.OutOrStdout(), "Copied file://%s to %s (%d bytes)\n", absPath(p), target, n)
					}
					return err
				})
			})
		},
	}
	cmd.Flags().StringVar(&writeType, "write-type", "", "MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH (default from alluxio.user.file.writetype.default, else ASYNC_THROUGH)")
	cmd.Flags().StringVar(&blockSize, "block-size", "", "block size, e.g. 64MB (default 64MB)")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace an existing file")
	return cmd
}

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

func putFile(ctx context.Context, c *client.Client, src, dst string, opts client.WriteOptions) (int64, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, fmt.Errorf("open local source: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		opts.Mode = uint32(st.Mode().Perm())
	}
	opts.Recursive = true
	w, err := c.Create(ctx, dst, opts)
	if err != nil {
		return 0, err
	}
	n, err := w.ReadFrom(f)
	if err != nil {
		w.Abort()
		return n, err
	}
	return n, w.Close()
}

func readTypeFlag(s string) (apiv1.ReadType, error) {
	if s == "" {
		return apiv1.ReadType_READ_TYPE_UNSPECIFIED, nil
	}
	rt, err := meta.ParseReadType(s)
	if err != nil {
		return 0, usageError{err}
	}
	return rt, nil
}

func fsCopyToLocal(g *globals) *cobra.Command {
	var readType string
	cmd := &cobra.Command{
		Use:     "copyToLocal [--read-type T] ALCOVE_SRC LOCAL_DST",
		Aliases: []string{"get"},
		Short:   "Copy a file or directory out of Alcove",
		Args:    exactArgs(2, "ALCOVE_SRC and LOCAL_DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := readTypeFlag(readType)
			if err != nil {
				return err
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				info, err := c.GetStatus(ctx, args[0])
				if err != nil {
					return err
				}
				dst := args[1]
				if st, err := os.Stat(dst); err == nil && st.IsDir() {
					dst = filepath.Join(dst, info.GetName())
				}
				if !info.GetFolder() {
					n, err := getFile(ctx, c, info.GetPath(), dst, rt)
					if err == nil {
						fmt.Fprintf(cmd.OutOrStdout(), "Copied %s to file://%s (%d bytes)\n", info.GetPath(), absPath(dst), n)
					}
					return err
				}
				all, err := c.ListStatus(ctx, info.GetPath(), true, false)
				if err != nil {
					return err
				}
				if err := os.MkdirAll(dst, 0o755); err != nil {
					return err
				}
				for _, i := range all {
					target := filepath.Join(dst, filepath.FromSlash(meta.RelPath(i.GetPath(), info.GetPath())))
					if i.GetFolder() {
						if err := os.MkdirAll(target, 0o755); err != nil {
							return err
						}
						continue
					}
					if _, err := getFile(ctx, c, i.GetPath(), target, rt); err != nil {
						return err
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Copied %s to file://%s\n", info.GetPath(), absPath(dst))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&readType, "read-type", "", "CACHE, CACHE_PROMOTE or NO_CACHE")
	return cmd
}

// getFile writes to a temp file and renames it, so a failed copy never
// leaves a truncated file that looks complete.
func getFile(ctx context.Context, c *client.Client, src, dst string, rt apiv1.ReadType) (int64, error) {
	r, err := c.OpenFile(ctx, src, rt)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".alcove-*")
	if err != nil {
		return 0, fmt.Errorf("create local file: %w", err)
	}
	n, err := r.WriteTo(tmp)
	if err == nil && n != r.Info().GetLength() {
		err = fmt.Errorf("copied %d bytes of %d: %w", n, r.Info().GetLength(), io.ErrUnexpectedEOF)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return n, err
	}
	return n, nil
}

func fsCat(g *globals) *cobra.Command {
	var readType string
	cmd := &cobra.Command{
		Use:   "cat [--read-type T] PATH",
		Short: "Print a file's content",
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := readTypeFlag(readType)
			if err != nil {
				return err
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				r, err := c.OpenFile(ctx, args[0], rt)
				if err != nil {
					return err
				}
				defer r.Close()
				_, err = r.WriteTo(cmd.OutOrStdout())
				return err
			})
		},
	}
	cmd.Flags().StringVar(&readType, "read-type", "", "CACHE, CACHE_PROMOTE or NO_CACHE")
	return cmd
}

func fsChecksum(g *globals) *cobra.Command {
	var algo string
	cmd := &cobra.Command{
		Use:   "checksum [--algo md5|sha256] PATH",
		Short: "Print a file's checksum (md5 by default, as Alluxio)",
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var h hash.Hash
			switch algo {
			case "md5":
				h = md5.New()
			case "sha256":
				h = sha256.New()
			default:
				return usagef("--algo %q: use md5 or sha256", algo)
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				r, err := c.OpenFile(ctx, args[0], apiv1.ReadType_NO_CACHE)
				if err != nil {
					return err
				}
				defer r.Close()
				if _, err := r.WriteTo(h); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s of %s is %s\n", algo, r.Info().GetPath(), hex.EncodeToString(h.Sum(nil)))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&algo, "algo", "md5", "md5 or sha256")
	return cmd
}

func fsPersist(g *globals) *cobra.Command {
	var timeout time.Duration
	var async bool
	cmd := &cobra.Command{
		Use:   "persist [--timeout 10m] [--async] PATH",
		Short: "Write a file or directory's files that are only cached (MUST_CACHE, ASYNC_THROUGH) to the UFS with the job tier, and wait until they are",
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return usagef("--timeout %v: give a positive duration such as 10m", timeout)
			}
			spec := &apiv1.JobSpec{Type: apiv1.JobType_PERSIST, Path: args[0], PersistTimeoutMs: timeout.Milliseconds()}
			return runJob(cmd, g, spec, async, args[0]+" persisted")
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long each file may take to reach the UFS")
	cmd.Flags().BoolVar(&async, "async", false, "submit the job and return")
	return cmd
}
