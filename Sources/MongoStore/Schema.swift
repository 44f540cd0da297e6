/// The indexes the features need, created idempotently at startup.
public enum Schema {
    public static func ensureIndexes(on connection: MongoConnection) throws {
        try connection.collection(UserStore.users).createIndexes([
            ["key": .document(["clerkId": .int32(1)]), "name": .string("clerkId_unique"), "unique": .bool(true)],
        ])
        try connection.collection(UserStore.webhookEvents).createIndexes([
            ["key": .document(["expireAt": .int32(1)]), "name": .string("expireAt_ttl"), "expireAfterSeconds": .int32(0)],
        ])
    }
}
