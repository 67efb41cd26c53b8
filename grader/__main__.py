from grader.cli import main
import sys

if __name__ == "__main__":  # not when multiprocessing's spawn re-imports the main module (Dask workers)
    sys.exit(main())
