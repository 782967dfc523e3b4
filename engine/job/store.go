package job

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
)

// store keeps jobs in bbolt: bucket "jobs" maps a big-endian job id to its
// JobInfo; bucket "done/<id>" holds the files a file job has finished.
// Every write is one bbolt transaction (fsync'd before it returns).
type store struct {
	db *bbolt.DB
}

var bucketJobs = []byte("jobs")

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create job store directory: %w", err)
	}
	db, err := bbolt.Open(filepath.Join(dir, "jobs.db"), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open job store %s: %w", dir, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketJobs)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("init job store: %w", err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func jobKey(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

func doneBucket(id int64) []byte { return append([]byte("done/"), jobKey(id)...) }

// create assigns the next id to info and stores it.
func (s *store) create(info *apiv1.JobInfo) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		info.Id = int64(seq)
		return putJob(b, info)
	})
}

func putJob(b *bbolt.Bucket, info *apiv1.JobInfo) error {
	data, err := proto.Marshal(info)
	if err != nil {
		return fmt.Errorf("encode job %d: %w", info.GetId(), err)
	}
	return b.Put(jobKey(info.GetId()), data)
}

// update writes jobs and records finished files in one transaction.
func (s *store) update(jobs []*apiv1.JobInfo, done map[int64][]string) error {
	if len(jobs) == 0 && len(done) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		for _, j := range jobs {
			if err := putJob(b, j); err != nil {
				return err
			}
		}
		for id, paths := range done {
			db, err := tx.CreateBucketIfNotExists(doneBucket(id))
			if err != nil {
				return err
			}
			for _, p := range paths {
				if err := db.Put([]byte(p), nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// load returns every job and, for each, the files it finished.
func (s *store) load() ([]*apiv1.JobInfo, map[int64]map[string]bool, error) {
	var jobs []*apiv1.JobInfo
	done := map[int64]map[string]bool{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			info := &apiv1.JobInfo{}
			if err := proto.Unmarshal(v, info); err != nil {
				return fmt.Errorf("decode job %x: %w", k, err)
			}
			jobs = append(jobs, info)
			if db := tx.Bucket(doneBucket(info.GetId())); db != nil {
				m := map[string]bool{}
				if err := db.ForEach(func(p, _ []byte) error { m[string(p)] = true; return nil }); err != nil {
					return err
				}
				done[info.GetId()] = m
			}
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load jobs: %w", err)
	}
	return jobs, done, nil
}

// dropDone forgets a finished job's file set (its JobInfo stays).
func (s *store) dropDone(id int64) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(doneBucket(id)) == nil {
			return nil
		}
		return tx.DeleteBucket(doneBucket(id))
	})
}
