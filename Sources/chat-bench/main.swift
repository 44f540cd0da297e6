print("chat-bench: under construction")
