print("mixer-dist")
