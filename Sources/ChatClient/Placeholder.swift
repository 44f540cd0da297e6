// The typed protocol client: see ChatConnection.swift.
