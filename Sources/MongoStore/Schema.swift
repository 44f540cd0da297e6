/// The indexes the features need, created idempotently at startup.
public enum Schema {
    public static func ensureIndexes(on connection: MongoConnection) throws {
        try connection.collection(UserStore.users).createIndexes([
            ["key": .document(["clerkId": .int32(1)]), "name": .string("clerkId_unique"), "unique": .bool(true)],
        ])
        try connection.collection(UserStore.webhookEvents).createIndexes([
            ["key": .document(["expireAt": .int32(1)]), "name": .string("expireAt_ttl"), "expireAfterSeconds": .int32(0)],
        ])
        try connection.collection(PresenceStore.connections).createIndexes([
            ["key": .document(["userId": .int32(1)]), "name": .string("userId")],
            ["key": .document(["instanceId": .int32(1)]), "name": .string("instanceId")],
            ["key": .document(["sessionId": .int32(1)]), "name": .string("sessionId")],
        ])
        try connection.collection(PresenceStore.revokedSessions).createIndexes([
            ["key": .document(["expireAt": .int32(1)]), "name": .string("expireAt_ttl"), "expireAfterSeconds": .int32(0)],
        ])
        try connection.collection(ChatStore.conversations).createIndexes([
            // A user's conversations. Not (members, updatedAt): every message moves updatedAt, and in
            // a group of N members that would rewrite N index keys per message; a user's own
            // conversations are few enough to sort after the lookup.
            ["key": .document(["members": .int32(1)]), "name": .string("members")],
        ])
        try connection.collection(ChatStore.messages).createIndexes([
            ["key": .document(BSONDocument([("conversationId", .int32(1)), ("seq", .int32(1))])), "name": .string("conversation_seq"), "unique": .bool(true)],
            ["key": .document(BSONDocument([("conversationId", .int32(1)), ("senderId", .int32(1)), ("clientId", .int32(1))])),
             "name": .string("conversation_sender_clientId"), "unique": .bool(true)],
        ])
        try connection.collection(ChatStore.reads).createIndexes([
            ["key": .document(["userId": .int32(1)]), "name": .string("userId")],
            // conversations.list reads every member's position of the listed conversations.
            ["key": .document(["conversationId": .int32(1)]), "name": .string("conversationId")],
        ])
        try connection.collection(ChatStore.events).createIndexes([
            ["key": .document(["expireAt": .int32(1)]), "name": .string("expireAt_ttl"), "expireAfterSeconds": .int32(0)],
        ])
        try connection.collection(PresenceStore.instances).createIndexes([
            ["key": .document(["heartbeatAt": .int32(1)]), "name": .string("heartbeatAt")],
        ])
    }
}
