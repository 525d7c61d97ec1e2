package chaos

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// netns is a network namespace of one role process, joined to the host's by
// a veth pair: the role listens on nsIP, and reaches its dependencies'
// proxies on hostIP. Packet filters inside it make partitions real: packets
// dropped or refused by the kernel, not by the proxy.
type netns struct {
	name           string
	hostIf         string
	hostIP, nsIP   string
	rules          map[string][]string // active iptables rules, by link
	created, veths bool
}

// canNetns reports whether roles can get namespaces of their own: root on
// Linux with ip and iptables, allowed to create a namespace and a veth pair
// (a container without CAP_NET_ADMIN is root but is not).
func canNetns() bool {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		return false
	}
	for _, bin := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			return false
		}
	}
	prefix, subnet := netnsPrefix()
	n, err := newNetns(prefix, subnet, 0)
	if err != nil {
		return false
	}
	n.close()
	return true
}

// netnsPrefix returns a random prefix for a run's namespaces and the /24
// they take their addresses from, so that runs at the same time do not
// meet.
func netnsPrefix() (prefix, subnet string) {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("elc%02x%02x", b[0], b[1]), fmt.Sprintf("10.%d.%d", 16+int(b[2])%200, int(b[0]))
}

// newNetns creates namespace i of a run: <prefix>-<i>, addresses
// <subnet>.<4i+1> (host side) and <subnet>.<4i+2> (inside).
func newNetns(prefix, subnet string, i int) (*netns, error) {
	n := &netns{
		name:   fmt.Sprintf("%s-%d", prefix, i),
		hostIf: fmt.Sprintf("%sh%d", prefix, i),
		hostIP: fmt.Sprintf("%s.%d", subnet, 4*i+1),
		nsIP:   fmt.Sprintf("%s.%d", subnet, 4*i+2),
		rules:  map[string][]string{},
	}
	nsIf := fmt.Sprintf("%sn%d", prefix, i)
	steps := [][]string{
		{"ip", "netns", "add", n.name},
		{"ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", nsIf},
		{"ip", "link", "set", nsIf, "netns", n.name},
		{"ip", "addr", "add", n.hostIP + "/30", "dev", n.hostIf},
		{"ip", "link", "set", n.hostIf, "up"},
		{"ip", "netns", "exec", n.name, "ip", "addr", "add", n.nsIP + "/30", "dev", nsIf},
		{"ip", "netns", "exec", n.name, "ip", "link", "set", nsIf, "up"},
		{"ip", "netns", "exec", n.name, "ip", "link", "set", "lo", "up"},
	}
	for k, s := range steps {
		if err := run(s...); err != nil {
			n.close()
			return nil, err
		}
		switch k {
		case 0:
			n.created = true
		case 1:
			n.veths = true
		}
	}
	return n, nil
}

// command returns the argv that runs bin with args inside the namespace.
// ip netns exec executes it in place, so the pid is the role's own: its
// signals (SIGSTOP, SIGKILL) reach the role.
func (n *netns) command(bin string, args ...string) (string, []string) {
	return "ip", append([]string{"netns", "exec", n.name, bin}, args...)
}

// cut makes the kernel refuse (reset) or silently drop every packet from
// the role to the proxy on port, for open and new connections alike.
func (n *netns) cut(link, port string, drop bool) error {
	rule := []string{"OUTPUT", "-d", n.hostIP, "-p", "tcp", "--dport", port, "-j", "REJECT", "--reject-with", "tcp-reset"}
	if drop {
		rule = []string{"OUTPUT", "-d", n.hostIP, "-p", "tcp", "--dport", port, "-j", "DROP"}
	}
	if err := run(append([]string{"ip", "netns", "exec", n.name, "iptables", "-A"}, rule...)...); err != nil {
		return err
	}
	n.rules[link] = rule
	return nil
}

// heal removes the rule of link, if any.
func (n *netns) heal(link string) error {
	rule, ok := n.rules[link]
	if !ok {
		return nil
	}
	delete(n.rules, link)
	return run(append([]string{"ip", "netns", "exec", n.name, "iptables", "-D"}, rule...)...)
}

// close removes the namespace and with it the veth pair.
func (n *netns) close() {
	if n.created {
		_ = run("ip", "netns", "del", n.name)
	}
	if n.veths {
		_ = exec.Command("ip", "link", "del", n.hostIf).Run() // gone with the namespace, normally
	}
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("chaos: %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
