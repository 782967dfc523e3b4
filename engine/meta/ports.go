package meta

import (
	"net"
	"strconv"
)

// Default ports, Alluxio's (alluxio.*.port properties override them).
const (
	MasterRPCPort    = 19998
	MasterWebPort    = 19999
	JournalPort      = 19200 // alluxio.master.embedded.journal.port
	WorkerRPCPort    = 29999
	WorkerDataPort   = 29998
	WorkerWebPort    = 30000
	JobMasterRPCPort = 20001
	JobMasterWebPort = 20002
	JobWorkerRPCPort = 30001
	JobWorkerWebPort = 30003
)

// HostPort joins host and port into an address.
func HostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
