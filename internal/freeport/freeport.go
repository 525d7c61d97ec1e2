// Package freeport finds a free TCP port on the loopback interface, for the
// private servers (redis-server, PostgreSQL, RabbitMQ) that tests and the
// benchmark command start on ports of their own.
package freeport

import "net"

// Loopback returns a TCP port on 127.0.0.1 that was free a moment ago. Another
// process may take it before the caller binds it; callers that start a server
// on it retry with a new port when the server cannot bind.
func Loopback() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
