// Package security is Alcove's trust boundary, in one place:
//
//   - certs.go: the cluster CA and component certificates (alcove certs
//     init|issue), written in the layout of a cert-manager Secret;
//   - roles.go: a component's role from its certificate (URI SAN
//     alcove://role/<role>), the Cluster policy of which role may call which
//     RPC, and the gRPC interceptors that enforce it;
//   - tlsconf.go: mTLS configurations for servers and clients that re-read
//     the key pair and CA when their files change;
//   - token.go: block tokens, signed by the master with a key it hands to
//     workers over the authenticated channel, checked by workers on every
//     data path (gRPC, raw data port, domain socket).
//
// SECURITY.md at the repository root describes the threat model.
package security
