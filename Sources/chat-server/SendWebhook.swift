import ArgumentParser
struct SendWebhook: ParsableCommand {}
