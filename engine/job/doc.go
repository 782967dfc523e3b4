// Package job is Alcove's job tier: a job master that keeps jobs (load,
// persist, free, replicate, copy, move) durable in its own bbolt store and
// splits them into tasks, and job workers that run those tasks next to the
// filesystem workers.
//
// The job tier is a client of the filesystem: the job master lists paths and
// reads block locations through engine/client, and a job worker caches
// blocks by asking the worker of its own node (CacheBlock), reads and writes
// files through the same client, and never reaches into engine/master or
// engine/worker (DESIGN.md §3).
//
// A job is a target, not a list of steps: the job master re-plans a running
// job from what the filesystem shows (which blocks are cached where, which
// files exist at the destination), so a restart, a dead job worker or a lost
// filesystem worker is handled the same way: the next plan round assigns
// what is still missing. What cannot be derived from the filesystem — the
// job's definition, state, failures with their attempt counts, and for
// file jobs the files already finished — is written to Dir/jobs.db in bbolt
// transactions before it is acknowledged.
//
// Block tasks (LOAD, REPLICATE) go to the job worker of the node that should
// hold the copy; nodes are chosen among those allowed (spec nodes, node
// labels) that do not hold the block yet, by free cache space. A job worker
// runs at most Slots tasks at once and may cap its load bandwidth with a
// token bucket so that a load does not starve readers.
package job
