package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	apiv1 "github.com/alcove-io/alcove/engine/api/v1"
	"github.com/alcove-io/alcove/engine/client"
)

// newQuorumCmd is `fsadmin journal quorum info|add|remove|elect`, Alluxio's
// names; members are named by --address (journal HOST:PORT) or --id.
func newQuorumCmd(g *globals) *cobra.Command {
	quorum := &cobra.Command{Use: "quorum", Short: "The journal's raft group: members, add, remove, elect a leader"}
	var domain string
	quorum.PersistentFlags().StringVar(&domain, "domain", "MASTER", "journal domain (only MASTER: the job service keeps no raft journal)")
	checkDomain := func() error {
		if !strings.EqualFold(domain, "MASTER") {
			return usagef("--domain %q: only MASTER has a journal group", domain)
		}
		return nil
	}
	member := func(use, short string, run func(ctx context.Context, c *client.Client, id, addr string) (string, error)) *cobra.Command {
		var id, addr string
		cmd := &cobra.Command{
			Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := checkDomain(); err != nil {
					return err
				}
				if id == "" && addr == "" {
					return usagef("name the member with --address HOST:PORT (its journal address) or --id ID")
				}
				return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
					msg, err := run(ctx, c, id, addr)
					if err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), msg)
					return nil
				})
			},
		}
		cmd.Flags().StringVar(&addr, "address", "", "the member's journal address HOST:PORT")
		cmd.Flags().StringVar(&id, "id", "", "the member's journal id")
		return cmd
	}
	quorum.AddCommand(
		&cobra.Command{
			Use: "info", Short: "List the members, their state and the leader", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := checkDomain(); err != nil {
					return err
				}
				return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
					qi, err := c.QuorumInfo(ctx)
					if err != nil {
						return err
					}
					return printQuorum(cmd.OutOrStdout(), qi)
				})
			},
		},
		member("add", "Add a voting member (start it first with the same --journal-peers plus itself)",
			func(ctx context.Context, c *client.Client, id, addr string) (string, error) {
				if addr == "" {
					return "", usagef("add needs --address HOST:PORT (the new member's journal address)")
				}
				if err := c.AddQuorumMember(ctx, id, addr); err != nil {
					return "", err
				}
				return fmt.Sprintf("Added %s to the quorum", addr), nil
			}),
		member("remove", "Remove a member (stop it afterwards)",
			func(ctx context.Context, c *client.Client, id, addr string) (string, error) {
				if err := c.RemoveQuorumMember(ctx, id, addr); err != nil {
					return "", err
				}
				return fmt.Sprintf("Removed %s%s from the quorum", id, addr), nil
			}),
		member("elect", "Transfer leadership to a member",
			func(ctx context.Context, c *client.Client, id, addr string) (string, error) {
				leader, err := c.TransferLeadership(ctx, id, addr)
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("Transferred leadership to %s", leader), nil
			}),
	)
	return quorum
}

func printQuorum(out io.Writer, qi *apiv1.GetQuorumInfoResponse) error {
	leader := "(none elected)"
	for _, m := range qi.GetMembers() {
		if m.GetLeader() {
			leader = m.GetAddress()
		}
	}
	fmt.Fprintf(out, "Journal domain\t: MASTER\nQuorum size\t: %d\nQuorum leader\t: %s\n\n", len(qi.GetMembers()), leader)
	tw := tabwriter.NewWriter(out, 1, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tROLE\tID\tSERVER ADDRESS\tRPC ADDRESS")
	for _, m := range qi.GetMembers() {
		state, role := "AVAILABLE", "FOLLOWER"
		if !m.GetAvailable() {
			state = "UNAVAILABLE"
		}
		switch {
		case m.GetLeader():
			role = "LEADER"
		case !m.GetVoter():
			role = "NONVOTER"
		}
		rpc := m.GetRpcAddress()
		if rpc == "" {
			rpc = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", state, role, m.GetId(), m.GetAddress(), rpc)
	}
	return tw.Flush()
}
