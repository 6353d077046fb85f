from .cli import console

# The guard matters: a process that imports this module under another name must not run the program.
if __name__ == "__main__":
    console()
